if [ "$(sql -At -c @exists@ </dev/null)" != 1 ]; then
  : > @marker@
  sql -c @create@ </dev/null
  echo "$who: created database "@database@
fi

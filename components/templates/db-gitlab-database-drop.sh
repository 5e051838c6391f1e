if [ -e @marker@ ]; then
  sql -c @drop@ </dev/null
  rm -f @marker@
  echo "$who: dropped database "@database@" (created by this program)"
fi

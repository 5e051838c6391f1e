if command -v @update@ >/dev/null 2>&1; then
  @update@
else
  @missing@
fi

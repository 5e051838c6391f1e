if [ -e @config_file@ ]; then
  if command -v openssl >/dev/null 2>&1; then
@probe@
    echo @name@": @how@; TLS verified with the stack CA"
  else
    echo @name@": @how@; openssl is not installed, TLS not probed"
  fi
else
  echo @name@": @how@"
fi

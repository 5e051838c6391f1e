for r in @embedded_ruby@ "$(command -v ruby 2>/dev/null || true)"; do
  if [ -n "$r" ] && [ -x "$r" ]; then exec "$r" -c @gitlab_rb@; fi
done
echo 'no ruby on this host to check gitlab.rb; gitlab-ctl reconfigure will'

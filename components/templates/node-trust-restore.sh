if command -v @update@ >/dev/null 2>&1; then
  @update@ || printf '%s\n' "warning: @update@ failed" >&2
fi
for link in @cert_dir@/*; do
  if [ -L "$link" ] && [ ! -e "$link" ]; then
    case "$(readlink "$link")" in
      @pem@|@system_ca@) rm -f "$link" ;;
    esac
  fi
done

set -eu
@inline_helper@
{ printf '%s' @header@; } | @run@

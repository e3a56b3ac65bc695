# bash completion for sandlot(1). Commands and options come from the binary itself
# (`sandlot help`, `sandlot help COMMAND`), so they never drift from it.
_sandlot() {
  local cur prev cmd words
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  cmd=${COMP_WORDS[1]}
  if [[ $COMP_CWORD -eq 1 ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-e -i -v --version -h --help" -- "$cur"))
    else
      words=$(sandlot help 2>/dev/null | awk '/^commands:/{on=1; next} on && NF {print $1}')
      COMPREPLY=($(compgen -W "$words" -- "$cur") $(compgen -f -X '!*.lua' -- "$cur"))
    fi
    return
  fi
  if [[ $prev == --provider || $prev == --filter && $cmd == check-provider ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return
  fi
  if [[ $COMP_CWORD -eq 2 && $cmd == checkpoint && $cur != -* ]]; then
    COMPREPLY=($(compgen -W "take ls rm restore" -- "$cur"))
    return
  fi
  if [[ $cur == -* ]]; then
    words=$(sandlot help "$cmd" 2>/dev/null |
            awk '/^options:/{on=1; next} on && /^  -/ {for (i = 1; i <= NF; i++) if ($i ~ /^-/) {gsub(",", "", $i); print $i}}')
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _sandlot sandlot

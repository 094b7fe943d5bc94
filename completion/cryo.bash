# bash completion for cryo: verbs, options, job names and checkpoint ids.
# Installed by 'cmake --install' into share/bash-completion/completions/cryo.

_cryo_jobs() {
  # 'cryo ls' prints a header, then one job a line, its name first.
  cryo "${_cryo_globals[@]}" ls 2>/dev/null | awk 'NR > 1 && $1 != "no" { print $1 }'
}

_cryo_checkpoints() {  # $1: a job
  # 'cryo status JOB' lists its checkpoints as "  ID  TIME ...".
  cryo "${_cryo_globals[@]}" status "$1" 2>/dev/null | awk '/^checkpoints/ { on = 1; next } on && $1 ~ /^[0-9]+$/ { print $1 }'
}

_cryo() {
  local cur prev verb i word
  local verbs="run sbatch checkpoint restore ls status verify rm check agent"
  COMPREPLY=()
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  _cryo_globals=()
  # The verb: the first word that is not a global option or its value.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    case $word in
      --store|--criu|--fast-tier|--fast-tier-size) _cryo_globals+=("$word" "${COMP_WORDS[i+1]}"); ((i++)); continue ;;
      --*=*) _cryo_globals+=("$word"); continue ;;
      -*) continue ;;
      *) verb=$word; break ;;
    esac
  done
  # The verb's words after it, but options and their values.
  local args=() j
  for ((j = i + 1; j < COMP_CWORD; j++)); do
    case ${COMP_WORDS[j]} in
      --from|--every|--keep|--name|-n|--checkpoint-on|--net|--ipc|--mpi|--agents) ((j++)) ;;
      -*) ;;
      *) args+=("${COMP_WORDS[j]}") ;;
    esac
  done
  case $prev in
    --store|--fast-tier|--announce-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --criu|--apptainer|--announce) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --checkpoint-on|--signal) COMPREPLY=($(compgen -W "USR1 USR2 TERM INT HUP" -- "$cur")); return ;;
    --net) COMPREPLY=($(compgen -W "host private" -- "$cur")); return ;;
    --ipc) COMPREPLY=($(compgen -W "private host" -- "$cur")); return ;;
    --mpi) COMPREPLY=($(compgen -W "auto openmpi mpich none" -- "$cur")); return ;;
    --from) [ ${#args[@]} -gt 0 ] && COMPREPLY=($(compgen -W "$(_cryo_checkpoints "${args[0]}")" -- "$cur")); return ;;
  esac
  if [ -z "$verb" ]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "--help --version --store --criu --fast-tier --fast-tier-size" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
    fi
    return
  fi
  if [[ $cur == -* ]]; then
    # A verb's options, from its own help.
    COMPREPLY=($(compgen -W "$(cryo "$verb" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)" -- "$cur"))
    return
  fi
  # A job, then (verify, rm) a checkpoint id.
  case $verb in
    checkpoint|restore|status)
      [ ${#args[@]} -eq 0 ] && COMPREPLY=($(compgen -W "$(_cryo_jobs)" -- "$cur")) ;;
    verify|rm)
      if [ ${#args[@]} -eq 0 ]; then
        COMPREPLY=($(compgen -W "$(_cryo_jobs)" -- "$cur"))
      elif [ ${#args[@]} -eq 1 ]; then
        COMPREPLY=($(compgen -W "$(_cryo_checkpoints "${args[0]}")" -- "$cur"))
      fi ;;
    run|sbatch)
      COMPREPLY=($(compgen -c -- "$cur")) ;;
  esac
}
complete -o default -F _cryo cryo

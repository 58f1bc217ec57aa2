# bash completion for jazari(1), the Jazari command-line client.
# Commands and options as in `jazari --help` and `jazari COMMAND --help` (clients/cli_cmds.c);
# installed as share/bash-completion/completions/jazari. Job ids are not completed: that would
# ask the server on every TAB.

_jazari_commands="submit queue show why fetch hold release modify history reserve reservations
    unreserve cancel logs wait nodes
    node plugins plugin usage statement report whoami token tenant admin place"
_jazari_global_opts="--url --token --ca --json --help"
# Options that take a value (the next word is theirs, not a positional argument).
_jazari_value_opts="--url --token --ca --plugin -p --gpus -g --cpus -c --cpus-per-gpu --time -t
    --mem --name -n --param -P --params-json --resume --class --nodes --gpus-per-node --state -s
    --user -u --limit --timeout --site --format -O --sort --reason --expires --tenant --role
    --unix-user --since -S --until -E --time-limit --nice
    --note --ttl -o --topology --worker --busy --busy-cores --model --min-memory-gib
    --weight --max-gpus --site-quota --model-quota --priority-class
    --reservation --start --end --duration --array --after --afterok --afternotok --afterany
    --dependency --notify --month --by --output --kind"

# Options of each command (besides the global ones).
_jazari_opts_for()
{
    case $1 in
    submit) echo "--plugin -p --gpus -g --cpus -c --cpus-per-gpu --time -t --mem --name -n
                  --preemptible --param -P --params-json --resume --class --nodes --gpus-per-node
                  --requeue --reservation --array --after --afterok --afternotok --afterany
                  --dependency --hold --nice --notify" ;;
    reserve) echo "--gpus -g --model --site --start --end --duration --tenant" ;;
    reservations) echo "--tenant --all -a" ;;
    queue) echo "--all -a --state -s --user -u --tenant --name -n --expand -r --format -O
                 --sort --noheader --limit" ;;
    fetch) echo "-o" ;;
    modify) echo "--name -n --time -t --time-limit --nice --class" ;;
    history) echo "--since -S --until -E --user -u --tenant --state -s --format --limit" ;;
    statement) echo "--tenant --month --since -S --until -E --format --output -o" ;;
    report) echo "--by --tenant --month --since -S --until -E --format" ;;
    logs) echo "--follow -f" ;;
    wait) echo "--timeout" ;;
    nodes) echo "--site" ;;
    node) echo "--reason" ;;
    token) echo "--expires" ;;
    plugin) echo "--worker" ;;
    admin) echo "--tenant --role --unix-user --expires --user --since --limit --note --site --ttl
                 --force --class --weight --max-gpus --site-quota --model-quota
                 --priority-class --kind --override" ;;
    tenant) echo "--role --unix-user --expires --tenant" ;;
    place) echo "--topology --gpus --cpus --cpus-per-gpu --busy --busy-cores --model
                 --min-memory-gib" ;;
    esac
}

# Subcommands: the word after COMMAND, and for admin the word after its object.
_jazari_subcommands()
{
    case $1 in
    node) echo "drain resume rm" ;;
    token) echo "rotate" ;;
    plugin) echo "check" ;;
    tenant) echo "show members add-member rm-member new-token" ;;
    report) echo "usage" ;;
    admin) echo "user token audit credit node tenant reload backup" ;;
    admin-tenant) echo "add set show list rm" ;;
    admin-user) echo "add list set rm" ;;
    admin-token) echo "list add revoke rotate" ;;
    admin-credit) echo "add" ;;
    admin-node) echo "token revoke" ;;
    esac
}

_jazari()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    # Values of options that take one.
    case $prev in
    --ca | --params-json | --topology | --worker)
        COMPREPLY=($(compgen -f -- "$cur"))
        return ;;
    --format | -O | -o)
        if [[ " ${words[*]} " == *" history "* ]]; then
            COMPREPLY=($(compgen -W "table csv json" -- "$cur"))
            return
        fi
        if [[ $prev == -o ]]; then
            COMPREPLY=($(compgen -f -- "$cur")) # fetch -o FILE
            return
        fi
        local cols="id name user tenant plugin state gpus time reason submit start end nodes
                    array priority nice class"
        COMPREPLY=($(compgen -W "$cols" -- "${cur##*,}"))
        if [[ $cur == *,* ]]; then
            local head=${cur%,*},
            COMPREPLY=("${COMPREPLY[@]/#/$head}")
        fi
        return ;;
    --sort)
        local col cols="id name user tenant plugin state gpus time reason submit start end nodes
                        array priority nice class"
        local -a all=()
        for col in $cols; do all+=("$col" "-$col"); done
        COMPREPLY=($(compgen -W "${all[*]}" -- "$cur"))
        return ;;
    --state | -s)
        local states="all PENDING RUNNING SUCCEEDED FAILED CANCELLED TIMEOUT"
        COMPREPLY=($(compgen -W "$states" -- "${cur##*,}"))
        if [[ $cur == *,* ]]; then
            local head=${cur%,*},
            COMPREPLY=("${COMPREPLY[@]/#/$head}")
        fi
        return ;;
    --role)
        COMPREPLY=($(compgen -W "user tenant-admin admin" -- "$cur"))
        return ;;
    --url | --token | --plugin | -p | --gpus | -g | --cpus | -c | --cpus-per-gpu | --time | -t | \
        --mem | --name | -n | --param | -P | --resume | --class | --nodes | --gpus-per-node | \
        --user | -u | --limit | --timeout | --site | --reason | --expires | --tenant | \
        --unix-user | --since | --note | --ttl | --busy | --busy-cores | --model | \
        --min-memory-gib | -S | --until | -E | --time-limit | --nice | --weight | --max-gpus | \
        --site-quota | --model-quota | --priority-class)
        return ;; # a value we cannot guess
    esac

    # The command: the first word that is not a global option or its value.
    local i cmd="" cmd_at=0
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        --url | --token | --ca) ((i++)) ;;
        -*) ;;
        *) cmd=${words[i]}; cmd_at=$i; break ;;
        esac
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$_jazari_global_opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$_jazari_commands" -- "$cur"))
        fi
        return
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_jazari_opts_for "$cmd") $_jazari_global_opts" -- "$cur"))
        return
    fi

    # Positional words after the command (options and their values left out).
    local -a pos=()
    for ((i = cmd_at + 1; i < cword; i++)); do
        [[ ${words[i]} == -* ]] && continue
        [[ " $_jazari_value_opts " == *" ${words[i-1]} "* ]] && continue
        pos+=("${words[i]}")
    done

    case $cmd in
    node | token | plugin | tenant)
        if ((${#pos[@]} == 0)); then
            COMPREPLY=($(compgen -W "$(_jazari_subcommands "$cmd")" -- "$cur"))
        elif [[ $cmd == plugin && ${pos[0]} == check ]]; then
            COMPREPLY=($(compgen -f -X '!*.so' -- "$cur") $(compgen -d -- "$cur"))
        fi ;;
    admin)
        if ((${#pos[@]} == 0)); then
            COMPREPLY=($(compgen -W "$(_jazari_subcommands admin)" -- "$cur"))
        elif ((${#pos[@]} == 1)); then
            if [[ ${pos[0]} == backup ]]; then
                COMPREPLY=($(compgen -f -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$(_jazari_subcommands "admin-${pos[0]}")" -- "$cur"))
            fi
        fi ;;
    esac
}
complete -F _jazari jazari

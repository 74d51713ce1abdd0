"""``zwmd completion bash|zsh``: a completion script built from the argument parser.

The parser is the one source of truth: the script lists each sub-command with its
options and choices, read from :mod:`argparse` (no extra dependency such as argcomplete,
whose run-time hook would start Python on every Tab). zsh runs the same function through
its ``bashcompinit`` layer. Workload ids are not completed (that would call the daemon).
"""

from __future__ import annotations

import argparse
import shlex

_BASH = """\
# zwmd completion for bash; load with: eval "$(zwmd completion bash)"
_zwmd_complete() {
    local cur prev
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    local cmd="${COMP_WORDS[1]}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W %(commands)s -- "$cur") )
        return 0
    fi
    case "$cmd:$prev" in
%(choices)s
    esac
    case "$cmd" in
%(options)s
    esac
}
complete -F _zwmd_complete zwmd
"""

_ZSH_PREFIX = """\
# zwmd completion for zsh; load with: eval "$(zwmd completion zsh)"
autoload -U +X bashcompinit && bashcompinit
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    commands = _subcommands(parser)
    choices: list[str] = []
    options: list[str] = []
    for name, sub in commands.items():
        flags: list[str] = []
        for action in sub._actions:
            flags += [f for f in action.option_strings if f.startswith("--")]
            if action.choices and action.option_strings:
                words = shlex.quote(" ".join(str(c) for c in action.choices))
                for flag in action.option_strings:
                    choices.append(
                        f'        {name}:{flag}) COMPREPLY=( $(compgen -W {words} -- "$cur") );'
                        " return 0 ;;"
                    )
            elif action.choices and not action.option_strings:
                flags += [str(c) for c in action.choices]
        words = shlex.quote(" ".join(flags))
        options.append(f'        {name}) COMPREPLY=( $(compgen -W {words} -- "$cur") ) ;;')
    text = _BASH % {
        "commands": shlex.quote(" ".join(commands)),
        "choices": "\n".join(choices),
        "options": "\n".join(options),
    }
    return (_ZSH_PREFIX + text) if shell == "zsh" else text

"""``telepty completion bash|zsh|fish``: shell completion, generated from the argparse parser.

Generated rather than hand-written, so a new command or flag is completable the day it
lands. Completes commands, their subcommands (``bus tail``), their ``--flags``, the
values of options with choices (``--status``, ``--agent``), and session ids wherever
an argument names a session (``telepty inject <TAB>``; marked by
``telepty.cli.options.session_arg``). Session ids come from the running daemon,
through ``telepty completion sessions``: nothing (and no error) when it is down.

    source <(telepty completion bash)          # ~/.bashrc
    source <(telepty completion zsh)           # ~/.zshrc (after compinit)
    telepty completion fish > ~/.config/fish/completions/telepty.fish
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from telepty.cli.client import Client, CliError
from telepty.config import Config

SHELLS = ("bash", "zsh", "fish")
SESSIONS = "sessions"  # a value completed with the session ids, not a fixed list
Values = list[str] | str | None  # choices, SESSIONS, or nothing to offer


@dataclass
class Command:
    name: str
    help: str = ""
    options: list[str] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)
    values: dict[str, Values] = field(default_factory=dict)  # every option that takes a value
    positionals: list[Values] = field(default_factory=list)  # what each positional completes to

    @property
    def session_options(self) -> list[str]:
        return [o for o, v in self.values.items() if v == SESSIONS]

    @property
    def choice_options(self) -> dict[str, list[str]]:
        return {o: v for o, v in self.values.items() if isinstance(v, list)}


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)",
                       description="Print the completion script for SHELL. bash: "
                       "source <(telepty completion bash); zsh: source <(telepty completion zsh); "
                       "fish: telepty completion fish > ~/.config/fish/completions/telepty.fish. "
                       "`telepty completion sessions` prints the session ids the scripts offer.")
    p.add_argument("shell", choices=(*SHELLS, SESSIONS),
                   help="the shell to complete for, or `sessions` for the ids of this home's sessions")
    p.set_defaults(func=cmd_completion)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _values(action: argparse.Action) -> Values:
    if getattr(action, "completes", None) == SESSIONS:
        return SESSIONS
    if action.choices is not None:
        return [str(c) for c in action.choices]
    return None


def describe(parser: argparse.ArgumentParser, name: str = "telepty") -> Command:
    """The parser as a tree of commands: names (aliases included), help, flags, values."""
    cmd = Command(name)
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        if a.option_strings:
            longs = [o for o in a.option_strings if o.startswith("--")]
            cmd.options.extend(longs)
            if a.nargs != 0:  # takes a value: --status X, not --json
                cmd.values.update(dict.fromkeys(longs, _values(a)))
        else:
            cmd.positionals.append(_values(a))
    cmd.options.sort()
    sub = _subparsers(parser)
    if sub is None:
        return cmd
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for child_name, child in sub.choices.items():
        # An alias maps to the same parser; its help is under the canonical name.
        canonical = next((n for n, p in sub.choices.items() if p is child and n in helps), child_name)
        node = describe(child, child_name)
        node.help = helps.get(child_name, helps.get(canonical, ""))
        cmd.subcommands.append(node)
    return cmd


# -- bash -------------------------------------------------------------------------------------

_BASH_SESSIONS = '$(telepty completion sessions 2>/dev/null)'


def _bash_words(values: Values) -> str:
    return _BASH_SESSIONS if values == SESSIONS else " ".join(values or [])


def _bash_case(c: Command, indent: str) -> str:
    """What one command completes: a value after an option that takes one, else its words."""
    lines = []
    groups: dict[str, list[str]] = {}
    for option, values in c.values.items():
        groups.setdefault(_bash_words(values), []).append(option)
    if groups:
        lines.append(f'{indent}case "$prev" in')
        for words, options in groups.items():
            # No words: the shell's own completion (files, directories) for a free value.
            reply = f'COMPREPLY=($(compgen -W "{words}" -- "$cur"))' if words else "COMPREPLY=()"
            lines.append(f"{indent}    {'|'.join(options)}) {reply}; return ;;")
        lines.append(f"{indent}esac")
    words = [s.name for s in c.subcommands] + c.options
    lines.append(f'{indent}opts="{" ".join(words)}"')
    for n, values in enumerate(c.positionals):
        if values:
            lines.append(f'{indent}(( npos == {n} )) && opts="$opts {_bash_words(values)}"')
    return "\n".join(lines)


def bash_script(root: Command) -> str:
    valued = sorted({o for c in _walk(root) for o in c.values})
    nested = [c.name for c in root.subcommands if c.subcommands]
    cases = [f'        "/")\n{_bash_case(root, " " * 12)}\n            ;;']
    for c in root.subcommands:
        cases.append(f'        "{c.name}/")\n{_bash_case(c, " " * 12)}\n            ;;')
        for s in c.subcommands:
            cases.append(f'        "{c.name}/{s.name}")\n{_bash_case(s, " " * 12)}\n            ;;')
    return f"""# bash completion for telepty (generated by `telepty completion bash`)
_telepty() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" cmd="" sub="" opts="" npos=0 i w
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local valued=" {' '.join(valued)} " nested=" {' '.join(nested)} "
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ "$w" == "--" ]] && return  # the rest belongs to the wrapped command
        [[ "$w" == -* ]] && continue
        [[ "$valued" == *" ${{COMP_WORDS[i-1]}} "* ]] && continue  # an option's value
        if [[ -z "$cmd" ]]; then cmd="$w"
        elif [[ -z "$sub" && "$nested" == *" $cmd "* ]]; then sub="$w"
        else ((npos++)); fi
    done
    case "$cmd/$sub" in
{chr(10).join(cases)}
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -o default -F _telepty telepty
"""


def _walk(c: Command) -> list[Command]:
    return [c, *(d for s in c.subcommands for d in _walk(s))]


# -- zsh --------------------------------------------------------------------------------------

_ZSH_SESSIONS = '${(f)"$(telepty completion sessions 2>/dev/null)"}'


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_describe(cmds: list[Command]) -> str:
    items = " ".join(_zsh_quote(f"{c.name}:{c.help.replace(':', chr(92) + ':')}") for c in cmds)
    return f"local -a cmds; cmds=({items}); _describe command cmds"


def _zsh_values(c: Command, first: int) -> str:
    """Option values (after the option) and the first positional (at word ``first``)."""
    out = []
    for option, values in c.values.items():
        if values == SESSIONS:
            out.append(f"[[ $words[CURRENT-1] == {option} ]] && {{ compadd -- {_ZSH_SESSIONS}; return }}")
        elif values:
            out.append(f"[[ $words[CURRENT-1] == {option} ]] && {{ compadd -- {' '.join(values)}; return }}")
    if c.positionals and c.positionals[0]:
        words = _ZSH_SESSIONS if c.positionals[0] == SESSIONS else " ".join(c.positionals[0])
        out.append(f"(( CURRENT == {first} )) && compadd -- {words}")
    return "; ".join(out) or ":"


def zsh_script(root: Command) -> str:
    cases = []
    for c in root.subcommands:
        opts = " ".join(c.options)
        if c.subcommands:
            sub_cases = "\n".join(
                f"                {s.name}) {_zsh_values(s, 4)}; compadd -- {' '.join(s.options)} ;;"
                for s in c.subcommands)
            body = (f"if (( CURRENT == 3 )); then {_zsh_describe(c.subcommands)}; compadd -- {opts}\n"
                    f"            else\n            case $words[3] in\n{sub_cases}\n            esac\n"
                    f"            fi")
        else:
            body = f"{_zsh_values(c, 3)}; compadd -- {opts}" if opts else _zsh_values(c, 3)
        cases.append(f"        {c.name})\n            {body}\n            ;;")
    return f"""#compdef telepty
# zsh completion for telepty (generated by `telepty completion zsh`)
_telepty() {{
    if (( CURRENT == 2 )); then
        {_zsh_describe(root.subcommands)}
        compadd -- {' '.join(root.options)}
        return
    fi
    case $words[2] in
{chr(10).join(cases)}
    esac
}}
if [[ "$funcstack[1]" == _telepty ]]; then _telepty "$@"; else compdef _telepty telepty; fi
"""


# -- fish -------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(cond: str, c: Command, option: str) -> str:
    values = c.values.get(option, None) if option in c.values else False
    line = f"complete -c telepty -n {cond} -l {option[2:]}"
    if values == SESSIONS:
        return line + " -xa '(telepty completion sessions 2>/dev/null)'"
    if isinstance(values, list):
        return line + f" -xa {_fish_quote(' '.join(values))}"
    return line + (" -r" if values is None else "")


def _fish_positionals(cond: str, c: Command) -> list[str]:
    if not (c.positionals and c.positionals[0]):
        return []
    values = c.positionals[0]
    words = "(telepty completion sessions 2>/dev/null)" if values == SESSIONS else " ".join(values or [])
    return [f"complete -c telepty -n {cond} -a {_fish_quote(words)}"]


def fish_script(root: Command) -> str:
    names = " ".join(c.name for c in root.subcommands)
    lines = ["# fish completion for telepty (generated by `telepty completion fish`)",
             "complete -c telepty -f"]
    for o in root.options:
        lines.append(f"complete -c telepty -n __fish_use_subcommand -l {o[2:]}")
    for c in root.subcommands:
        lines.append(f"complete -c telepty -n 'not __fish_seen_subcommand_from {names}' "
                     f"-a {c.name} -d {_fish_quote(c.help)}")
        cond = f"'__fish_seen_subcommand_from {c.name}'"
        lines.extend(_fish_option(cond, c, o) for o in c.options)
        lines.extend(_fish_positionals(cond, c))
        subnames = " ".join(s.name for s in c.subcommands)
        for s in c.subcommands:
            lines.append(f"complete -c telepty -n '__fish_seen_subcommand_from {c.name}; "
                         f"and not __fish_seen_subcommand_from {subnames}' -a {s.name} "
                         f"-d {_fish_quote(s.help)}")
            sub_cond = f"'__fish_seen_subcommand_from {c.name}; and __fish_seen_subcommand_from {s.name}'"
            lines.extend(_fish_option(sub_cond, s, o) for o in s.options)
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell``, from the whole CLI's ``parser``."""
    root = describe(parser)
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](root)


def session_ids(config: Config) -> list[str]:
    """This home's sessions (not exited), for completion: none when the daemon is away."""
    try:
        sessions = Client(config, timeout=2.0).request("GET", "/api/sessions", query={"all": "0"})
    except CliError:
        return []
    return [s["id"] for s in sessions if isinstance(s, dict) and isinstance(s.get("id"), str)]


def cmd_completion(args: argparse.Namespace, config: Config) -> int:
    if args.shell == SESSIONS:
        sys.stdout.writelines(f"{sid}\n" for sid in session_ids(config))
        return 0
    sys.stdout.write(script(args.shell, args.root_parser))
    return 0

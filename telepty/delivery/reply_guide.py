"""The reply footer for routed prompts, and the termination signals that suppress it.

An agent that receives a routed prompt does not know how to answer through telepty,
so a prompt that expects a reply gets one short line telling it. A message that
closes the conversation ("ack received", "thread closed", …) must not get that line:
agents obediently reply to it, the other side replies to the reply, and two agents
ping-pong acknowledgements all night.
"""

from __future__ import annotations

import re
import shlex

_TERMINATION_PATTERNS = (  # English ones on word boundaries: "feedback received" is no ack
    r"\bno\s+further\s+reply\s+(?:is\s+)?needed\b",
    r"\bthread\s+closed\b",
    r"\bclosed\s+on\s+(?:the\s+)?\S+(?:\s+\S+)?\s+side\b",
    r"\back(?:nowledgement)?\s+received\b",
    r"\back[-\s]only\b",
    r"회신\s*불필요",
    r"스레드\s*종료",
)
_TERMINATION_RE = re.compile("|".join(_TERMINATION_PATTERNS), re.IGNORECASE)

# What a shell leaves alone unquoted; anything else in a reply target gets quoted.
_PLAIN_ARG_RE = re.compile(r"^[A-Za-z0-9._@:%+=,/-]+$")

FOOTER_TEMPLATE = '\n\n[telepty] reply expected: run  telepty inject {target} "<your reply>"'


def termination_signal(text: str) -> str | None:
    """The phrase that marks ``text`` as closing the conversation, or None."""
    m = _TERMINATION_RE.search(text)
    return m.group(0) if m else None


def reply_footer(reply_to: str) -> str:
    target = reply_to if _PLAIN_ARG_RE.match(reply_to) else shlex.quote(reply_to)
    return FOOTER_TEMPLATE.format(target=target)


def with_reply_footer(prompt: str, *, reply_to: str | None, reply_expected: bool) -> str:
    """``prompt`` plus the footer when a reply is expected, someone is there to get it,
    and the prompt is not itself a closing message. A prompt that already ends with the
    footer (a turn_request carries it from the bus router into the intake) keeps one."""
    if not reply_expected or not reply_to or termination_signal(prompt) is not None:
        return prompt
    footer = reply_footer(reply_to)
    return prompt if prompt.endswith(footer) else prompt + footer

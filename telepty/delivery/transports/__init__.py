"""The ways a prompt reaches a terminal: ``base`` (the one ``Transport`` interface),
``tmux``, ``pty``, ``wrapper`` and ``stream`` (what the last two share), ``relay``, and
``resolver`` (which one reaches a session)."""

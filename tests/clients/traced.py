"""Records which public methods of the official Python client a test script calls itself, so the
README's compatibility table is checked against what really ran (tests/api_official_clients.rs).

`trace(client)` wraps every public method, class method and property of the client's classes;
a call counts only when it comes straight from the test script (not from the SDK calling its
own methods). `report()` prints `PUBLIC <client> …` (every traced name) and `COVERED <client> …`
(the names called), as row names of the README table: `run_code`, `files.read`, `env.get_all`.
"""

import functools
import inspect
import sys

_called = set()
_public = set()
_scripts = set()


def _wrap(function, row):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename in _scripts:
            _called.add(row)
        return function(*args, **kwargs)

    return wrapper


def _trace_class(cls, prefix):
    for name, attr in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        row = prefix + name
        if isinstance(attr, classmethod):
            setattr(cls, name, classmethod(_wrap(attr.__func__, row)))
        elif isinstance(attr, staticmethod):
            setattr(cls, name, staticmethod(_wrap(attr.__func__, row)))
        elif isinstance(attr, property):
            setattr(cls, name, property(_wrap(attr.fget, row), attr.fset, attr.fdel, attr.__doc__))
        elif inspect.isfunction(attr):
            setattr(cls, name, _wrap(attr, row))
        else:
            continue
        _public.add(row)


def trace(side, script):
    """Traces the sync (`side="sync"`) or async classes; calls from `script` count."""
    import hopx_ai
    from hopx_ai import (cache, commands, env_vars, files, terminal, _async_cache, _async_commands,
                         _async_env_vars, _async_files, _async_terminal)

    _scripts.add(script)
    if side == "sync":
        classes = [(hopx_ai.Sandbox, ""), (files.Files, "files."), (commands.Commands, "commands."),
                   (env_vars.EnvironmentVariables, "env."), (cache.Cache, "cache."),
                   (terminal.Terminal, "terminal.")]
    else:
        classes = [(hopx_ai.AsyncSandbox, ""), (_async_files.AsyncFiles, "files."),
                   (_async_commands.AsyncCommands, "commands."),
                   (_async_env_vars.AsyncEnvironmentVariables, "env."),
                   (_async_cache.AsyncCache, "cache."), (_async_terminal.AsyncTerminal, "terminal.")]
    for cls, prefix in classes:
        _trace_class(cls, prefix)


def report(client):
    print("PUBLIC", client, " ".join(sorted(_public)), flush=True)
    print("COVERED", client, " ".join(sorted(_called)), flush=True)

"""Where the operator's files are, and how they are written and announced."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from realtime.config.users import DEFAULT_MIN_PASSWORD_LENGTH, password_length
from realtime.config.edit import EditError, UserFile, load_toml
from realtime.config.fields import parse_toml
from realtime.net import pidfile

DEFAULT_CONFIG = Path("conf/realtime.toml")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "password")


class AdminError(EditError):
    """A message for the operator (already names the file); exit status 1."""


# -- locating the files ---------------------------------------------------------


class Paths:
    def __init__(self, config: Path) -> None:
        self.config = config
        try:
            raw = tomllib.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AdminError(f"{config}: no such file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AdminError(f"{config}: cannot read: {exc}") from None
        self.raw = raw
        base = config.parent
        oauth = raw.get("oauth") if isinstance(raw.get("oauth"), dict) else {}
        server = raw.get("server") if isinstance(raw.get("server"), dict) else {}
        self.oauth: dict[str, Any] = oauth
        self.apps = base / str(oauth.get("apps", "apps.toml"))
        self.users = base / str(oauth.get("users", "users.json"))
        state_dir = server.get("state_dir")
        self.state_dir = base / str(state_dir) if state_dir is not None else Path("var")
        self.apps_named = "apps" in oauth
        self.users_named = "users" in oauth


def notify_server(target: Any) -> bool:
    """SIGHUP the running server, if any; ``target`` is Settings or a state dir."""
    state_dir = target.server.state_dir if hasattr(target, "server") else Path(target)
    pid, outcome = pidfile.send_reload(Path(state_dir))
    if outcome in ("no_pid_file", "gone"):
        print("note: no running server found; the change applies when it starts", file=sys.stderr)
        return False
    if outcome == "stale":
        print(f"note: stale pid file (pid {pid} is not a running server; not signalled); "
              "the change applies when the server starts", file=sys.stderr)
        return False
    if outcome == "denied":
        print(f"note: not allowed to signal pid {pid}; run `realtime reload`", file=sys.stderr)
        return False
    print(f"note: told the running server (pid {pid}) to reload", file=sys.stderr)
    return True


def check_value(kind: str, value: str, check: Any) -> None:
    """Run a config validator on a command-line value; AdminError on failure."""
    try:
        check(value)
    except ValueError as exc:
        raise AdminError(f"bad {kind}: {exc}") from None


def min_password_length(paths: Paths) -> int:
    """``[oauth] min_password_length`` from the raw config, checked as the loader does."""
    raw = paths.oauth.get("min_password_length", DEFAULT_MIN_PASSWORD_LENGTH)
    try:
        return password_length(raw)
    except ValueError as exc:
        parsed = parse_toml(paths.config, [])
        line = parsed[1].line(("oauth", "min_password_length")) if parsed else None
        where = f"{paths.config}:{line}" if line else str(paths.config)
        raise AdminError(f"{where}: oauth.min_password_length: {exc}") from None


# Users and apps share one namespace of token subjects (a client_credentials
# token's sub is its client_id).  These two readers are lenient: a file that
# does not parse is left to `realtime check`, which refuses a collision too.


def client_ids(paths: Paths) -> set[str]:
    """The apps' client_ids, casefolded."""
    try:
        apps = load_toml(paths.apps).get("app")
    except EditError:
        return set()
    tables = apps if isinstance(apps, list) else []
    return {str(t.get("client_id")).casefold() for t in tables if isinstance(t, dict) and "client_id" in t}


def user_names(paths: Paths) -> set[str]:
    """The users' names, casefolded."""
    try:
        users = UserFile(paths.users).users
    except EditError:
        return set()
    return {str(u.get("name")).casefold() for u in users if "name" in u}


def notify(paths: Paths) -> None:
    notify_server(paths.state_dir)

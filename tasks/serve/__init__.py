"""Online inference: a run directory's model behind Ray Serve, the same answers as `conductor predict`.

`start` deploys it (foreground, or detached on a cluster's Ray), `wait_foreground` holds it until
Ctrl-C, `status` and `down` find it again through CONDUCTOR_HOME/serve/app.json.
"""
from .config import ServeOptions, check_options
from .control import down, resolve_run, start, status, wait_foreground

__all__ = ["ServeOptions", "check_options", "down", "resolve_run", "start", "status", "wait_foreground"]

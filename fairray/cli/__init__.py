"""The `fairray` command. User mistakes end as one red line and exit code 2, never a traceback.

`base` holds the app and what every command shares; `stages` the commands that run one configured stage,
`tools` the ones around them (inspect, sample, score, report, compare, submit). Importing them registers them.
"""

from fairray.cli import stages, tools
from fairray.cli.base import app

__all__ = ["app", "stages", "tools"]

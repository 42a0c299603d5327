"""Where the package's installed files are: its name and its parameter files (config/)."""
from __future__ import annotations

from pathlib import Path

PACKAGE = "hamster_runtime"


def default_config_dir() -> Path:
    """The repository's config/ in a source or editable install, else the installed share folder."""
    source = Path(__file__).resolve().parent.parent / "config"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(PACKAGE)) / "config"


CONFIG_DIR = default_config_dir()

"""A salt-master's configuration with every path under one directory, no master running:
what the runner's unit tests and the fleet-memory benchmark load the runner with."""

from pathlib import Path


def master_opts_under(root: Path) -> dict:
    """Salt's master opts for a config whose paths all lie under ``root`` (Salt prepends
    ``root_dir`` to a path outside it), with an empty ``pki_dir/minions``."""
    import salt.config

    config = root / "master"
    config.write_text(
        f"root_dir: {root}\n"
        + "".join(f"{key}: {root / key}\n" for key in ("pki_dir", "cachedir", "sock_dir", "log_file"))
    )
    (root / "pki_dir" / "minions").mkdir(parents=True)
    return salt.config.master_config(str(config))

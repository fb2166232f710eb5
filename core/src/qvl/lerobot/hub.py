"""A LeRobot data set named by its hub id (``org/name``), as LeRobot users name them.

``huggingface_hub.snapshot_download(repo_type="dataset")`` does the work: it reuses the local
cache (``HF_HUB_CACHE``, ``HF_HOME``), downloads only what is missing, and with
``HF_HUB_OFFLINE=1`` reads the cache alone. qvl adds one-line errors that name the setting.
"""

from __future__ import annotations

import re
from pathlib import Path

from qvl.errors import UserError

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def hub_dataset(repo_id: str, revision: str = "", *, setting: str = "task.repo_id") -> Path:
    """The local folder of data set ``repo_id`` at ``revision`` (a branch, tag or commit; empty: main),
    downloaded into the Hugging Face cache when it is not there yet.

    :param setting: the config key that named it, for the error messages.
    :raises UserError: not an ``org/name`` id, not in the cache while offline, not on the hub, or
        the download failed.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{setting} = {repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    if not REPO_ID.fullmatch(repo_id):
        raise UserError(f"{where}: expected a hub data set id 'org/name'")
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision or None))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise UserError(f"{where}: not in the local Hugging Face cache, and the hub cannot be reached "
                        "(HF_HUB_OFFLINE is set, or no network); download it once where the hub is reachable, "
                        "or set task.data_dir to a local copy") from None
    except RevisionNotFoundError:
        raise UserError(f"{where}: the hub has no such revision") from None
    except RepositoryNotFoundError:
        raise UserError(f"{where}: no such data set on the hub (or it is private: log in with `hf auth login`)") \
            from None
    except (HfHubHTTPError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{where}: download failed ({type(exc).__name__}: {reason})") from None

"""Files and folders written whole or not at all: every file this package writes goes through here.

A reader (another process, a later run that resumes, a user who interrupts a run) never sees half a file or half a
folder: content is written under a temporary name beside its target and renamed into place when complete, and a
failure removes the temporary copy.
"""

import contextlib
import json
import os
import shutil
import tempfile


def check_new_folder(path: str, what: str = "the output") -> str:
    """Refuses a `path` that exists and is not an empty folder (call it before long work); returns it absolute."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"{path!r} exists and is not empty; choose a new output folder for {what}.")
    return path


@contextlib.contextmanager
def atomic_folder(path: str, what: str = "the output", private: bool = False, replace: bool = False):
    r"""
    Yields an empty staging folder beside `path`; when the block ends without error, the folder becomes `path`.

    Args:
        path (`str`): the folder to create.
        what (`str`, *optional*): what the folder holds, for the error message.
        private (`bool`, *optional*, defaults to `False`): make it readable by its owner only (0700), as for a key.
        replace (`bool`, *optional*, defaults to `False`): replace an existing `path` once the new one is complete;
            by default an existing non-empty `path` is refused before anything is written.

    Example:

    ```python
    >>> from hf_ingrain.files import atomic_folder
    >>> with atomic_folder("attacked/", what="the attacked model") as staging:
    ...     model.save_pretrained(staging)
    ```
    """
    path = os.path.abspath(os.fspath(path))
    if not replace:
        check_new_folder(path, what)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=parent)
    try:
        yield staging
        os.chmod(staging, 0o700 if private else 0o755)  # mkdtemp's folders are private; a model folder is not
        if os.path.isdir(path):
            if replace:
                shutil.rmtree(path)
            else:
                os.rmdir(path)  # empty: checked above
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str):
    """Yields a temporary file name beside `path` (same extension) to write to; renamed to `path` when complete."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.path.basename(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{stem}-", suffix=extension, dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def write_text(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, payload, **json_kwargs) -> None:
    """Writes `payload` as indented JSON to `path` atomically (`json_kwargs` go to `json.dump`)."""
    write_text(path, json.dumps(payload, **{"indent": 2, "default": str, **json_kwargs}) + "\n")

"""Pascal VOC archives: mirrors and published MD5s, fetched through the shared download helper.

The MD5s are the ones the VOC organizers' archives have always had (torchvision's VOC dataset
checks the same values). Archives are extracted with `bplab.data.archive.extract_archive`, which
rejects members that would land outside the target folder.
"""

from __future__ import annotations

from pathlib import Path

from bplab.data.archive import extract_archive
from bplab.errors import unknown_name_error

_OXFORD = "http://host.robots.ox.ac.uk/pascal/VOC"
_PJREDDIE = "https://pjreddie.com/media/files"

# part -> (archive file name, mirrors, md5, VOC folder inside VOCdevkit)
VOC_ARCHIVES = {
    "2007-trainval": ("VOCtrainval_06-Nov-2007.tar",
                      (f"{_OXFORD}/voc2007/VOCtrainval_06-Nov-2007.tar",
                       f"{_PJREDDIE}/VOCtrainval_06-Nov-2007.tar"),
                      "c52e279531787c972589f7e41ab4ae64", "VOC2007"),
    "2007-test": ("VOCtest_06-Nov-2007.tar",
                  (f"{_OXFORD}/voc2007/VOCtest_06-Nov-2007.tar",
                   f"{_PJREDDIE}/VOCtest_06-Nov-2007.tar"),
                  "b6e924de25625d8de591ea690078ad9f", "VOC2007"),
    "2012-trainval": ("VOCtrainval_11-May-2012.tar",
                      (f"{_OXFORD}/voc2012/VOCtrainval_11-May-2012.tar",
                       f"{_PJREDDIE}/VOCtrainval_11-May-2012.tar"),
                      "6cd6e144f989b92b3379bac3b3de84fd", "VOC2012"),
}


def download_voc(part: str, root: str | Path | None = None, progress: bool = True) -> Path:
    """Fetch and verify one VOC archive, extract it under ``<root>/voc``; return the VOC folder.

    An archive already extracted (its JPEGImages folder exists and a marker file records the
    archive) is not extracted again.
    """
    from bplab.data.download import fetch

    if part not in VOC_ARCHIVES:
        raise unknown_name_error("VOC archive", part, VOC_ARCHIVES)
    filename, urls, md5, year_folder = VOC_ARCHIVES[part]
    archive = fetch(filename, list(urls), md5=md5, subdir="voc", progress=progress, root=root)
    target = archive.parent
    marker = target / f".{filename}.extracted"
    if not marker.is_file():
        extract_archive(archive, target)
        marker.write_text("ok\n")
    return target / "VOCdevkit" / year_folder

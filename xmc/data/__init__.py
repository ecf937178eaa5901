"""Data stage: fetch raw datasets (:mod:`.download`), read their formats (:mod:`.readers`) and
hold/write the canonical form (:mod:`.dataset`)."""
from xmc.data.dataset import Dataset
from xmc.data.download import fetch, sha256_of
from xmc.data.readers import READERS, read_dataset

__all__ = ["Dataset", "READERS", "fetch", "read_dataset", "sha256_of"]

"""`python -m tests.gcs_main ARGS`: `python -m gen_jax.main ARGS` with the two gaps of the
local GCS emulator (gcp-storage-emulator) patched, for tests/test_object_store.py only:

- it has no moveTo API, so gcsfs's rename retries for ~30 s a file: copy, then delete;
- tensorboardX's GCS writer uploads its buffer again when garbage-collected at exit, after
  the writer was closed: skip that (real GCS accepts the upload; the emulator may be gone).
"""

import runpy

import gcsfs
from tensorboardX import record_writer


async def _copy_then_delete(self, path1, path2, **kwargs):
  await self._cp_file(path1, path2)
  await self._rm_file(path1)


gcsfs.GCSFileSystem._mv_file = _copy_then_delete
record_writer.GCSRecordWriter.__del__ = lambda self: None

if __name__ == '__main__':
  runpy.run_module('gen_jax.main', run_name='__main__', alter_sys=True)

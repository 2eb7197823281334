"""`python -m tests.gcs_emulator ARGS`: the `gcp-storage-emulator ARGS` server, its media
downloads answered with the object's generation in `x-goog-generation` as GCS does (the
emulator leaves it out; tensorstore's OCDBT, orbax's checkpoint format, reads its manifest
back by generation and fails with "Malformed StorageGeneration" without it). Tests only.
"""

import sys
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects

_download = objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
    response['x-goog-generation'] = obj['generation']
    response['x-goog-metageneration'] = obj['metageneration']


objects.download = _download_with_generation  # before the server's routes are built

if __name__ == '__main__':
  from gcp_storage_emulator.__main__ import main  # pylint: disable=g-import-not-at-top
  sys.exit(main(sys.argv[1:]))

"""A file above UPLOAD_MAX_BYTES is cut short as it arrives, not stored whole first.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not count the files of a multipart body, and its
default handlers keep a file of any size (in a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE)
before a view could refuse it. This handler, first in FILE_UPLOAD_HANDLERS, passes on the first
UPLOAD_MAX_BYTES + 1 bytes of each file and drops the rest: one byte over is all that
image_checks.read_limited needs to refuse it, so every upload path (the API, the home page,
the bulk upload) still answers its usual 400 "File too large (max N MB).", and no more than
that is ever kept in memory or on disk.

Neither StopUpload nor SkipFile: a server that stops reading a body mid-way gets the client a
"connection reset" instead of the answer that says why, and a file skipped outright reaches the
view as "no file was submitted". The rest of the body is still read (and dropped), so the proxy
in front should cap the body size too.
"""

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler


class UploadLimitHandler(FileUploadHandler):
    """Passes each file's chunks on to the next handlers up to UPLOAD_MAX_BYTES + 1 bytes."""

    def receive_data_chunk(self, raw_data, start):
        # `start`: how much of this file arrived before this chunk.
        keep = settings.UPLOAD_MAX_BYTES + 1 - start
        if keep <= 0:
            return None  # the next handlers never see it
        return raw_data[:keep]

    def file_complete(self, file_size):
        return None  # the next handler (memory or temporary file) makes the file

"""Call recording (SPEC REC-1 … REC-5): the recorder service, its SQLite index, and backup.

Modules: `recorder.service` (records answered calls to Ogg Opus), `recorder.index` (the
recording index and its search), `recorder.backup` (copies to a directory, FTP or SFTP target).
"""

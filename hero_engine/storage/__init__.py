"""A session's storage, torch-free: hero.db, file integrity, the session lock, the sessions folder and listing."""

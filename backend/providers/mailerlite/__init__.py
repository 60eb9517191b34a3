"""MailerLite: the new API (`client.py`) and the Classic v2 API (`classic.py`)."""

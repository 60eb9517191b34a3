"""Mailchimp Marketing API v3: audiences, members, tags (our segments), merge fields."""

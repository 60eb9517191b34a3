"""Prometheus metrics, registered once per process on the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS_RECEIVED = Counter(
    "mailsync_webhooks_received_total", "Webhook deliveries accepted", ["source"])
WEBHOOKS_REJECTED = Counter(
    "mailsync_webhooks_rejected_total", "Webhook deliveries refused", ["source", "reason"])
HTTP_REQUESTS = Counter(
    "mailsync_http_requests_total", "Requests served", ["method", "status"])
OUTBOUND_CALLS = Counter(
    "mailsync_outbound_calls_total", "Calls made to Kommo and the ESPs", ["service", "status"])
OUTBOUND_ERRORS = Counter(
    "mailsync_outbound_errors_total", "Outbound calls that failed", ["service", "error"])
# Per vendor only, never per account: the series stay as few as the vendors (per account: /admin).
OUTBOUND_RATE_LIMITED = Counter(
    "mailsync_outbound_rate_limited_total", "Calls a vendor answered with 429", ["vendor"])
RATE_LIMIT_WAITS = Counter(
    "mailsync_rate_limit_waits_total", "Times a call waited for its budget", ["service"])
JOBS = Gauge("mailsync_jobs", "Jobs by state", ["state"])
JOB_DURATION = Histogram(
    "mailsync_job_duration_seconds", "Job run time", ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
JOB_ATTEMPTS = Histogram(
    "mailsync_job_attempts", "Attempt number at which a job run ended", ["kind"],
    buckets=(1, 2, 3, 4, 6, 8, 10, 12))
JOBS_DEAD = Counter("mailsync_jobs_dead_total", "Jobs that used up their attempts", ["kind"])
QUEUE_AGE = Gauge("mailsync_queue_oldest_pending_seconds", "Age of the oldest due pending job")

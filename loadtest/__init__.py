"""Load testing: busy-hour call traces, their replay, and the staffing model."""

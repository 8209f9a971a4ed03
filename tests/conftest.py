"""Suite-wide settings. Property tests run at least 500 examples per property (CI included)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("quick", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

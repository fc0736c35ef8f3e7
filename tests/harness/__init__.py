"""What the tests run fitserve with: served processes (`served`), the app in-process (`inprocess`), the calls both answer (`calls`)."""

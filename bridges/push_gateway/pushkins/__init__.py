"""Pushkins: one per push service type (``webpush``, ``fcm``/``gcm``, ``apns``)."""

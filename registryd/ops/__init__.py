"""Running registryd in production: health, metrics, logs, drain, configuration reports."""

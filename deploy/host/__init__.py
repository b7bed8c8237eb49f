"""Code that runs on the host: started by its supervisord, by cron, or inside a release."""

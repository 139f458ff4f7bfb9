"""connex venue: endpoints, models, client."""

"""zoomex venue: endpoints, models, client."""

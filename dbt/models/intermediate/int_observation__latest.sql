-- Rows of the view `observation` for the latest version of each resource, deletes removed.
{{ latest_view_rows('observation') }}

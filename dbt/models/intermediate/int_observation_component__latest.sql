-- Rows of the view `observation_component` for the latest version of each resource, deletes removed.
{{ latest_view_rows('observation_component') }}

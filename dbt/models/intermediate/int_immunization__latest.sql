-- Rows of the view `immunization` for the latest version of each resource, deletes removed.
{{ latest_view_rows('immunization') }}

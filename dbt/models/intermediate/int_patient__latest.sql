-- Rows of the view `patient` for the latest version of each resource, deletes removed.
{{ latest_view_rows('patient') }}

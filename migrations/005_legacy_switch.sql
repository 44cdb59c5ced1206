-- 005_legacy_switch.sql -- retiring the legacy path (issue 16 part 3).
--
-- The switch itself lives in Redis (<prefix>stream_legacy_path, read with
-- the ratio); its changes are audited beside the ratio's, one row each, in
-- t_stream_ratio_audit: the ratio in force as old_ratio = new_ratio, and
-- the reason legacy_retired or legacy_restored. One table keeps one
-- timeline of every routing change. Only the documentation changes here.
COMMENT ON TABLE t_stream_ratio_audit IS
    'Every routing change: the stream traffic ratio (gray release and emergency rollback) and the legacy path switch; from what, to what, when, by whom.';
COMMENT ON COLUMN t_stream_ratio_audit.reason IS
    'Why: ratio_change (POST /api/stream_traffic_ratio), emergency_rollback, legacy_retired or legacy_restored (POST /api/legacy_path, or a rollback that restored the legacy path; the ratio is unchanged in those rows).';

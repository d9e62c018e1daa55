-- 0002: the jobs of one /veo prompt count > 1 share a group_id; look them up together (status message).
CREATE INDEX jobs_group ON jobs (group_id) WHERE group_id IS NOT NULL;

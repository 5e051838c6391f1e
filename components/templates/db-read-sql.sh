IFS= read -r mtm_sql || mtm_fail 'stdin ended before SQL @n@'

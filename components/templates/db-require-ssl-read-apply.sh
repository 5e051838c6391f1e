IFS= read -r mtm_prev || mtm_fail 'stdin ended before the SELECT of the REQUIRE flags'
IFS= read -r mtm_req || mtm_fail 'stdin ended before the REQUIRE SSL statements'

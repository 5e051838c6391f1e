[ -e "$saved" ] || { echo "$who: no saved REQUIRE flags; left as it is"; exit 0; }

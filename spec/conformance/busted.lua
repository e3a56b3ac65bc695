-- busted configuration for `sandlot check-provider`: used instead of whatever .busted the
-- current directory holds, so the suite runs the same from anywhere.
return {
  _all = {
    pattern = "",
    lpath = "",
  },
}

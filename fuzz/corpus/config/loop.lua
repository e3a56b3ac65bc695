local t = {}
for i = 1, 10 do t["p" .. i] = { "local", n = i } end
return { providers = t }

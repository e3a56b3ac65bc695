return { default = 3 }

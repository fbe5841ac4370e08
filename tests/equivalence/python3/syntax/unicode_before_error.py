print('héllo wörld ✓ 日本')
x = ( # ünïcode

raise ValueError('héllo wörld ✓ 日本語')

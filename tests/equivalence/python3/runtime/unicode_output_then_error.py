print('ünïcödé ✓')
print('日本語')
raise SystemExit('エラー')

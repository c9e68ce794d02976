"""Names and fixed values of the APIv3 wire protocol (spec: protocol.md §2, §4, §5.2, §9)."""

from __future__ import annotations

SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"

# Request headers.
H_AUTHORIZATION = "Authorization"
H_ACCEPT = "Accept"
H_CONTENT_TYPE = "Content-Type"
H_USER_AGENT = "User-Agent"
H_WECHATPAY_SERIAL = "Wechatpay-Serial"

# Response and callback headers.
H_REQUEST_ID = "Request-ID"
H_TIMESTAMP = "Wechatpay-Timestamp"
H_NONCE = "Wechatpay-Nonce"
H_SIGNATURE = "Wechatpay-Signature"
H_SERIAL = "Wechatpay-Serial"
H_SIGNATURE_TYPE = "Wechatpay-Signature-Type"

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# A response or callback whose signature starts with this is a deliberate probe that must fail
# verification (official FAQ); the sandbox can emit them.
SIGNATURE_PROBE_PREFIX = "WECHATPAY/SIGNTEST/"

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"

# Both SDKs reject responses whose timestamp is 5 minutes or more away from local time.
DEFAULT_TIME_WINDOW_SECONDS = 300

PRIMARY_HOST = "https://api.mch.weixin.qq.com"
BACKUP_HOST = "https://api2.mch.weixin.qq.com"

# webizpay callback retry ladder: delay before each send, at most 10 sends (spec §9.4).
WEBIZPAY_RETRY_DELAYS_SECONDS = (0, 15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600)
CALLBACK_ANSWER_TIMEOUT_SECONDS = 5.0
# What WeChat Pay's own callback POSTs carry as User-Agent (headers of a production APIv3 notification
# printed by a receiver: wechatpay-apiv3/wechatpay-go issue #28, with Accept: */*); the spec names none.
CALLBACK_USER_AGENT = "Mozilla/4.0"

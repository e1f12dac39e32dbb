"""Sign in through an external OAuth 2 provider (README "Logging in
through an external provider"): the flow's start and the users file of a
first login (:mod:`.flow`), the logins waiting for the provider's answer
(:mod:`.pending`, in the store), the users first logins put in a shared
store (:mod:`.users`) and the seam to the outbound HTTP (:mod:`.outbound`).
The callback endpoint that ends the flow is :mod:`realtime.oauth.callback`,
above this package: it resumes the authorization request.
"""

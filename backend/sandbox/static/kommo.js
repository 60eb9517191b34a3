// The part of Kommo a widget sees: the APP global, notifications, and the system methods Kommo
// merges into every widget object (get_settings, i18n, render with the system controls,
// render_template, $authorizedAjax with a real X-Auth-Token). `KommoHost.create(area)` builds a
// widget instance the way Kommo does and runs render -> init -> bind_actions.
(function (global, $) {
  'use strict';

  var S = global.SANDBOX;
  var token = null;
  var langs = null;
  var stored = {};

  function esc(text) {
    return String(text == null ? '' : text).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  function dotted(root, path) {
    return String(path).split('.').reduce(function (node, key) {
      return node != null && typeof node === 'object' ? node[key] : undefined;
    }, root);
  }

  // --- notifications (Kommo shows them in the top right corner) ---------------------------

  function toast(kind, message) {
    var m = message || {};
    var $t = $('<div class="sbx-toast" role="status">').addClass('sbx-toast_' + kind)
      .attr('data-sandbox', 'toast-' + kind)
      .append($('<strong>').text(m.header || ''), $('<div>').text(m.text || ''));
    $('#sbx-toasts').append($t);
    setTimeout(function () { $t.fadeOut(300, function () { $t.remove(); }); }, kind === 'error' ? 9000 : 5000);
  }

  var card = false;
  global.APP = {
    lang_id: S.lang,
    constant: function (key) {
      return {account: {id: S.account.id, subdomain: S.account.subdomain, name: S.account.name},
        user: {id: S.user.id, name: S.user.name, login: 'admin@' + S.account.subdomain + '.example'},
        user_rights: {is_admin: 'Y'}}[key];
    },
    data: {current_card: false, current_list: false},
    getBaseEntity: function () { return card ? card.entity : 'leads'; },
    isCard: function () { return !!card; },
    getWidgetsArea: function () { return card ? card.entity + '_card' : 'leads-pipeline'; },
    notifications: {
      show_message: function (m) { toast('info', m); },
      show_message_error: function (m) { toast('error', m); },
      add_error: function (m) { toast('error', m); }
    }
  };
  global.AMOCRM = global.APP;  // the deprecated twin some widgets still read

  // --- system controls (/tmpl/controls/*.twig) -------------------------------------------

  var CONTROLS = {
    select: function (p) {
      var items = p.items || [];
      var selected = p.selected != null ? String(p.selected) : (items[0] ? String(items[0].id) : '');
      var options = items.map(function (item) {
        return '<option value="' + esc(item.id) + '"' + (String(item.id) === selected ? ' selected' : '') +
          '>' + esc(item.option) + '</option>';
      }).join('');
      return '<div class="control--select ' + esc(p.class_name || '') + '">' +
        '<select class="control--select--native" aria-label="' + esc(p.name || '') + '">' + options + '</select>' +
        '<input type="hidden" class="control--select--input" name="' + esc(p.name || '') + '" value="' +
        esc(selected) + '"></div>';
    },
    input: function (p) {
      return '<input class="text-input ' + esc(p.class_name || '') + '" type="' + esc(p.type || 'text') +
        '" name="' + esc(p.name || '') + '" value="' + esc(p.value || '') + '" placeholder="' +
        esc(p.placeholder || '') + '" autocomplete="off">';
    },
    button: function (p) {
      return '<button type="button" class="button-input ' + esc(p.class_name || '') + '" name="' +
        esc(p.name || '') + '"><span class="button-input-inner"><span class="button-input-inner__text">' +
        esc(p.text || '') + '</span></span></button>';
    },
    checkbox: function (p) {
      return '<label class="control-checkbox ' + esc(p.class_name || '') + '"><span class="control-checkbox__body">' +
        '<input type="checkbox" name="' + esc(p.name || '') + '" value="' + esc(p.value || 'Y') + '"' +
        (p.checked ? ' checked' : '') + '><span class="control-checkbox__helper"></span></span>' +
        '<span class="control-checkbox__text">' + esc(p.text || '') + '</span></label>';
    },
    textarea: function (p) {
      return '<textarea class="textarea-autosize ' + esc(p.class_name || '') + '" name="' + esc(p.name || '') +
        '" placeholder="' + esc(p.placeholder || '') + '">' + esc(p.value || '') + '</textarea>';
    }
  };

  // Kommo's select is a styled list over a hidden input that carries the value and fires
  // `change`; here a native <select> drives that same hidden input.
  $(document).on('change', '.control--select--native', function () {
    $(this).siblings('input.control--select--input').val(this.value).trigger('change');
  });

  function substitute(template, params) {
    return String(template).replace(/\{\{\s*([\w.]+)\s*\}\}/g, function (whole, path) {
      var value = dotted(params || {}, path);
      return value == null ? '' : String(value);
    });
  }

  function render(spec, params) {
    spec = spec || {};
    if (spec.ref) {
      var name = String(spec.ref).replace(/^.*\/controls\//, '').replace(/\.twig$/, '');
      if (!CONTROLS[name]) {
        throw new Error('the sandbox has no system control ' + spec.ref);
      }
      return CONTROLS[name](params || {});
    }
    if (typeof spec.data === 'string') {
      return substitute(spec.data, params);
    }
    throw new Error('the sandbox renders {ref: "/tmpl/controls/…"} and {data: "…"} only');
  }

  // --- the widget object -------------------------------------------------------------------

  function params() {
    return $.extend({}, stored, {widget_code: S.widget_code, path: S.widget_path, version: S.version,
      images_path: S.widget_path + '/images', backend_url: global.location.origin,
      oauth_client_uuid: S.client_id, widget_active: 'Y', active: 'Y', status: 'installed'});
  }

  function system(area) {
    var settings = params();
    return {
      params: settings,
      langs: langs,
      get_settings: function () { return settings; },
      set_settings: function (values) { $.extend(settings, values); },
      i18n: function (key) { return dotted(langs, key); },
      set_lang: function (values) { $.extend(true, langs, values); },
      system: function () {
        return {area: area, amouser_id: S.user.id, amouser: 'admin@' + S.account.subdomain + '.example',
          amohash: '', subdomain: S.account.subdomain, domain: 'kommo.com'};
      },
      render: render,
      render_template: function (options, values) {
        var o = options || {};
        var html = (o.body || '') + (typeof o.render === 'string' ? substitute(o.render, values) : '');
        var $panel = $('#sbx-card-widgets');
        $panel.find('.card-widgets__widget[data-code="' + S.widget_code + '"]').remove();
        $('<div class="card-widgets__widget">').attr('data-code', S.widget_code).append(
          $('<div class="card-widgets__widget__caption">').addClass((o.caption || {}).class_name || '').append(
            $('<img alt="" width="28" height="28">').attr('src', S.widget_path + '/images/logo_min.png'),
            $('<span>').text(dotted(langs, 'widget.name') || S.widget_code)),
          $('<div class="card-widgets__widget__body">').html(html)).appendTo($panel);
        return true;
      },
      $authorizedAjax: function (options) {
        var o = $.extend({}, options);
        o.headers = $.extend({}, options && options.headers, {'X-Auth-Token': token});
        return $.ajax(o);
      },
      crm_post: function (url, data, success, type, error) {
        return $.ajax({url: url, type: 'POST', data: data, dataType: type || 'json', success: success, error: error});
      },
      get_version: function () { return S.version; },
      get_install_status: function () { return 'installed'; },
      set_status: function () {},
      widgetsOverlay: function () {},
      list_selected: function () { return {count: 0, selected: []}; }
    };
  }

  function start(Widget, area) {
    // Kommo merges its system methods into the widget: here they sit on a per-instance
    // prototype, so they are there while the widget's constructor runs.
    var Bound = function () {};
    Bound.prototype = Object.create(Widget.prototype);
    $.extend(Bound.prototype, system(area));
    var instance = Object.create(Bound.prototype);
    var returned = Widget.call(instance);
    var widget = returned && typeof returned === 'object' ? returned : instance;
    var cb = widget.callbacks || {};
    if (cb.render && cb.render() === true) {
      if (cb.init) { cb.init(); }
      if (cb.bind_actions) { cb.bind_actions(); }
    }
    return widget;
  }

  var widgetClass = null;

  function load() {
    if (!widgetClass) {
      widgetClass = Promise.all([
        $.getJSON(S.widget_path + '/i18n/' + S.lang + '.json').then(function (l) { langs = l; }),
        $.getJSON('/sandbox/api/widget-settings').then(function (s) { stored = s; }),
        refreshToken()
      ]).then(function () {
        return new Promise(function (done, fail) {
          global.require([S.widget_path + '/script.js'], done, fail);
        });
      });
    }
    return widgetClass;
  }

  function refreshToken() {
    return $.post('/sandbox/api/token').then(function (answer) { token = answer.token; });
  }
  setInterval(refreshToken, 10 * 60 * 1000);  // tokens live 30 minutes

  global.KommoHost = {
    esc: esc,
    toast: toast,
    langs: function () { return langs; },
    load: load,
    create: function (area) {
      return load().then(function (Widget) { return start(Widget, area); });
    },
    // A lead or contact card is open: what APP.data.current_card holds in Kommo.
    openCard: function (entity, id, model) {
      card = {entity: entity, id: id};
      global.APP.data.current_card = {id: id, model: model || {}, element_type: entity === 'contacts' ? 1 : 2};
    },
    closeCard: function () {
      card = false;
      global.APP.data.current_card = false;
    },
    saveSettings: function (fields) {
      stored = $.extend({}, stored, fields);
      return $.ajax({url: '/sandbox/api/widget-settings', type: 'PUT', contentType: 'application/json',
        data: JSON.stringify(fields)});
    }
  };

  // RequireJS and the shim both take named modules: jQuery as Kommo provides it.
  global.define('jquery', [], function () { return $; });
})(window, window.jQuery);
